from linesync.cli.main import main

raise SystemExit(main())
