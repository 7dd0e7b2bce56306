"""The LM's text side: tokenizers (:mod:`.tokenizer`), corpora (:mod:`.corpora`), chat templates
(:mod:`.chat`), packing documents into fixed-length rows (:mod:`.packing`) and the pretraining corpus
with its manifest (:mod:`.pretraining`)."""
