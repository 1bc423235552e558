import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# rendered embedded datasets go to a throwaway cache, not the user's ~/.cache (CI sets its own)
os.environ.setdefault("CONTRASTIVE_BENCH_CACHE", tempfile.mkdtemp(prefix="contrastive-bench-test-cache-"))
