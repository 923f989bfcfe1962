"""cxrkit: a Keras 3 / TensorFlow toolkit for interpretable chest X-ray diagnosis.

Importing the package is cheap: TensorFlow and Keras are imported only by the modules that
need them, so the command line starts quickly for data work.
"""

__version__ = "0.1.0"
