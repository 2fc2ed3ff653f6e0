"""MCP tools the gateway runs itself: the registry of servers and their tools, and the tool loop."""
