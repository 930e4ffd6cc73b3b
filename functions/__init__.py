"""One blueprint per trigger. Each decodes its binding, calls one service, and settles."""
