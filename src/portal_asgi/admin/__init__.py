"""The admin area's operations (`service.py`), their refusals (`errors.py`) and the JSON admin
API over them (`api.py`). The HTML pages call the same service functions."""
