"""The pipeline layer: safe image decoding, preprocessing recipes, postprocessing and decoders."""
