from ccorch.cli import main

raise SystemExit(main())
