from doctorsun.cli import main

raise SystemExit(main())
