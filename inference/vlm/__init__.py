"""Vision-language models: chat interface (types), prompt templates, answer parsing and
prompt protocols. Pure Python; backends implement `inference.vlm.types.ChatBackend`."""
