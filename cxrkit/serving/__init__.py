"""TensorFlow Serving: SavedModel export and predictions (see ``docs/serving.md``)."""

from cxrkit.serving.export import export_model, next_version, write_models_config
from cxrkit.serving.predict import predict_local, predict_server, read_card

__all__ = ["export_model", "next_version", "predict_local", "predict_server", "read_card",
           "write_models_config"]
