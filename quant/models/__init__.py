"""Float models trained here (CPU, fixed seeds) and their quantized twins."""
