"""A BentoML 1.4-style service file, served unchanged by bentohost."""

import os

import bentohost as bentoml
from pydantic import BaseModel


class Summary(BaseModel):
    words: int
    chars: int


@bentoml.service(workers=2, traffic={"timeout": 10})
class Summarizer:
    def __init__(self) -> None:
        self.prefix = "summary"

    @bentoml.api
    def summarize(self, text: str) -> str:
        return f"{self.prefix}: {text[:10]}"

    @bentoml.api
    def stats(self, text: str) -> Summary:
        return Summary(words=len(text.split()), chars=len(text))

    @bentoml.api
    def whoami(self) -> dict:
        return {"worker_index": bentoml.server_context.worker_index, "pid": os.getpid()}
