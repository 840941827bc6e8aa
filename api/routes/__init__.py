"""The API's routes, one module per resource (``APIRouter`` each); ``api.app.ROUTERS`` lists them."""
