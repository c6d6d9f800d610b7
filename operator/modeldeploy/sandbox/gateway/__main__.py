import sys

from modeldeploy.sandbox.gateway.controller import main

sys.exit(main())
