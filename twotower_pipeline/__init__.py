"""twotower_pipeline: keeps a two-tower video recommender fresh, from the app's likes to an
active model version in pgvector."""

import os

# TensorFlow's C++ start-up chatter is noise in the run logs the ops team reads.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
