"""Training one model: the config and its recipes (`config`), device and precision (`device`),
augmentation (`augment`), the fit loop (`fit`) and inference with TTA (`inference`)."""
