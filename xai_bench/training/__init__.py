"""Training: the Lightning classifier, the optimisation recipe, the fit loop with exact resume,
and the Group-CAM augmentation module."""
