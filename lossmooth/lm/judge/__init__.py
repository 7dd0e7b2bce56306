"""The LM's evaluation by a judge: the pairwise judge client (:mod:`.client`), a responder that answers
chats with a decoder (:mod:`.respond`) and the OpenAI-compatible server in front of it (:mod:`.server`)."""
