// Promise.withResolvers (ES2024) for Node 20, which lacks it; js-ipfs 0.66's
// dependencies call it. Loaded with NODE_OPTIONS=--import <this file>.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
