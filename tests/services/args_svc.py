"""bentohost.use_arguments() at import time, as BentoML's docs use it; ARGS_SCHEMA
picks the schema: "model" (pydantic), "dataclass", or "none" (a namespace)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from pydantic import BaseModel

import bentohost


class ModelArgs(BaseModel):
    model_name: str
    gpu: int = 8
    tags: list[str] = []


@dataclasses.dataclass
class DataArgs:
    model_name: str
    gpu: int = 8


SCHEMA = os.environ.get("ARGS_SCHEMA", "none")
VIEW: dict[str, Any]
if SCHEMA == "model":
    model_args = bentohost.use_arguments(ModelArgs)
    VIEW = {"type": type(model_args).__name__, **model_args.model_dump()}
elif SCHEMA == "dataclass":
    data_args = bentohost.use_arguments(DataArgs)
    VIEW = {"type": type(data_args).__name__, **dataclasses.asdict(data_args)}
else:
    ns = bentohost.use_arguments()
    VIEW = {"type": type(ns).__name__, **vars(ns)}


@bentohost.service
class Args:
    @bentohost.api
    def args(self) -> dict:
        return VIEW
