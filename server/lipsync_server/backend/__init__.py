"""Logic shared by the python-backend models in model_repository/ (imported by their model.py)."""
