"""The chain edge: the JSON-RPC connection and signing (:mod:`.client`), the market contract's typed
client (:mod:`.contract`), compiled artifacts (:mod:`.compile`, shipped as package data) and the local
development chains and key files (:mod:`.devchain`)."""
