import os

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Gradio must not phone home from a test either.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
