"""Datasets as Lightning DataModules yielding dict samples (image, label, index, boxes, masks)."""
