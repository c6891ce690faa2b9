"""Drop-in session stores for agent frameworks, backed by eventlog.

- ``eventlog.integrations.langchain``: ``EventLogChatMessageHistory``, a LangChain
  ``BaseChatMessageHistory`` (install ``eventlog[langchain]``).
- ``eventlog.integrations.openai_agents``: ``EventLogSession``, an OpenAI Agents SDK
  ``Session`` (install ``eventlog[openai-agents]``).
- ``eventlog.integrations.langgraph``: ``EventLogSaver``, a LangGraph checkpointer
  (install ``eventlog[langgraph]``).
- ``eventlog.integrations.adk``: ``EventLogSessionService``, a Google ADK session service
  (install ``eventlog[adk]``).
- ``eventlog.integrations.pydantic_ai``: ``EventLogMessageHistory``, a pydantic-ai agent's
  message history (install ``eventlog[pydantic-ai]``).

This package imports no framework itself, so ``import eventlog`` never needs one.
In an append-only log nothing is erased inside a session: clearing a history or popping an item appends
an event that marks what it hides, and ``EventLog.events()`` still shows the whole story.
"""

from __future__ import annotations
