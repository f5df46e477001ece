"""The ViT encoder-block accelerator (gateware) and its host-side program builder."""
