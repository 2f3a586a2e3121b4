"""The bridge's routes, one APIRouter per module: sync (the spec's endpoints), jobs (list, cancel, delete), site.

rest_bridge/app.py puts their routes straight into the app's route list (flat, as if declared on the app).
"""
