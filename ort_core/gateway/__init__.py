"""``ort serve``: any ORT function behind HTTP, as Scaleway's core runtime serves functions.

``server`` starts uvicorn on the ASGI app in ``app``; ``http_event`` maps requests and
answers; ``auth`` checks the JWT of private functions; ``pool`` runs invocations on a pool of
pipelines. docs/gateway.md is the contract.
"""
