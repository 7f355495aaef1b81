"""Agent assist: reply suggestions for the visitor's latest message (canned responses,
knowledge-base articles, the agent's own past answers), the visitor's language and a
sentiment flag, for the dashboard only (docs/bot.md "Agent assist")."""
