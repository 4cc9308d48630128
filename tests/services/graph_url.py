"""A dependency declared by URL, with the class for its API shapes:
depends(url=..., on=Model) calls a Model served elsewhere, with JSON."""
import os

import bentohost
from graph_calls import Model


@bentohost.service
class ByUrl:
    model = bentohost.depends(url=os.environ.get("MODEL_URL", "http://127.0.0.1:9"), on=Model)

    @bentohost.api
    def predict(self, x: list[float]) -> float:
        return self.model.predict(x=x) * 10
