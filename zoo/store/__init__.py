"""The store layer: cache layout, sources, downloads, archives, the Hugging Face cache, mirrors."""
