import sys

from modeldeploy.sandbox.podrunner.runner import main

sys.exit(main())
