"""Part 4, agents: the deal feed, memory, messenger and pricer tools, and their MCP server."""
