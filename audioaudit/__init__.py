"""audioaudit: does my audio generator copy its training data?"""
__version__ = "0.1.0"
