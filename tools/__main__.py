from mpota.cli import main

raise SystemExit(main())
