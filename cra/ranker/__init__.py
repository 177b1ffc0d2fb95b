"""The learned scope ranker: a small text encoder fine-tuned on the files each task's
commit changed, mixed with BM25, registered as the `ranker` kind of adapter.

Nothing here imports torch or sentence-transformers at module level: the scoring and
training functions import them when they run.
"""
