"""Test harnesses that are not part of the product: a real js-ipfs daemon for the Kubo backend's tests
(``ipfsnode``), a JSON-RPC request counter (``rpc_count``) and whole commit–reveal rounds played with the
real roles (``rounds.play_round``)."""
