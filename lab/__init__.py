"""lab: image classification and representation learning on Lightning."""
