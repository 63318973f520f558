"""Model commands as library calls: `corral chat`, `corral export`, `corral quickstart`.

    from corral.api.models import ChatOptions, chat, open_chat
    chat(ChatOptions(model="smollm2-135m-instruct", prompt="Hello")).text
    session = open_chat(ChatOptions(model="openai:gpt-4o-mini", strategy="refine:1"))
"""
from corral.methods.quickstart import QuickstartOptions, QuickstartResult, run_quickstart
from corral.model.commands import ExportOptions, ExportResult, export_model
from corral.strategies.chat import ChatOptions, ChatReply, ChatSession, chat, open_chat

__all__ = ["ChatOptions", "ChatReply", "ChatSession", "ExportOptions", "ExportResult",
           "QuickstartOptions", "QuickstartResult", "chat", "export_model", "open_chat",
           "run_quickstart"]
