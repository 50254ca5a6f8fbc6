"""Custom Rasa NLU components for Belofte (imported by the Rasa process from the project root)."""
