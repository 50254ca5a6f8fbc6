"""Next-best answers from the knowledge base, and what agents and customers did with them."""
