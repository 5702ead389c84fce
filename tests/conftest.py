pytest_plugins = ["towerpy.testing.pytest_plugin"]
