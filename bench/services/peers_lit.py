"""LitServe peer of bench/peers.py (its own module: LitServe spawns its inference worker, which must
import the LitAPI class by name; granian/uvicorn importing peers_apps.py then never import litserve).

    python peers_lit.py --port P    (from bench/services/, .bench/peers-venv's Python)
"""
import argparse

import litserve as ls

from peers_work import Request, compute


class PeersAPI(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):  # LitServe hands over the parsed JSON (a dict)
        return Request.model_validate(request)

    def predict(self, req):
        return compute(req.user, req.items)

    def encode_response(self, output):
        return output


def main(port: int) -> None:
    # One inference worker, one API server (uvicorn on uvloop + httptools, no access log),
    # fast_queue: ZeroMQ between them (LitServe's fastest queue).
    server = ls.LitServer(PeersAPI(api_path="/predict"), accelerator="cpu", devices=1, workers_per_device=1,
                          fast_queue=True, timeout=30)
    server.run(host="127.0.0.1", port=port, num_api_servers=1, log_level="warning", generate_client_file=False,
               loop="uvloop", http="httptools", access_log=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    main(ap.parse_args().port)
