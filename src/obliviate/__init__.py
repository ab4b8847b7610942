"""obliviate: machine unlearning — forget chosen training data and prove it against retraining."""

__version__ = "0.1.0"
