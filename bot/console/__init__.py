"""The agent console (``/console``): the assistant, next-best answers and the promise, mid-call."""
