"""Op kinds of pretrained models: torchvision, timm, Hugging Face, checkpoints, and what they share
(weights files, head surgery, backbone options, the download guard)."""
