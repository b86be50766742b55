"""Test harnesses that are not part of the product (a real js-ipfs daemon for the Kubo backend's tests)."""
