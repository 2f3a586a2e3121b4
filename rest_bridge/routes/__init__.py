"""The bridge's routes, one APIRouter per module: sync (the spec's endpoints), jobs (list, cancel, delete), site."""
