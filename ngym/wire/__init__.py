"""Wire shapes: OpenAI Responses and Chat Completions, and the data rows ngym servers exchange."""
