"""What the frontline observes, sent to the CX team."""
