"""Making an avatar from a plain video of a person: face tracking, crops, dataset, training, checks."""
