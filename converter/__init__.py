"""``convert-head``: a trained PyTorch head -> full-int8 TFLite model + manifest, verified."""
