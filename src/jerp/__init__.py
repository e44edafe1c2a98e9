"""jerp: joint learning of experiential rules and policies for LLM agents in text worlds."""

__version__ = "0.1.0"
