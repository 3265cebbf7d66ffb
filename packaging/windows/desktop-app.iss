; Inno Setup 6 script for desktop-app (Windows installer around the PyInstaller one-folder app).
;
;   iscc packaging\windows\desktop-app.iss                                  (CPU build)
;   iscc /DVariant=cuda /DDiskSpan=yes /DAppVersion=0.1.0 packaging\windows\desktop-app.iss
;
; Input: dist\desktop-app\ (made by `python packaging\build.py`). Output: dist\installer\.
; The CUDA build is 3-5 GB: with DiskSpan=yes the data goes into setup-N.bin slices next to
; the small setup .exe (required above 4.2 GB compressed, and each slice stays under GitHub's
; 2 GiB per-asset limit). Users keep the .exe and the .bin files in one folder and run the .exe.
; The app writes nothing into its install folder, so a per-user install (default) and a
; machine-wide install into Program Files both work.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef Variant
  #define Variant "cpu"
#endif
#ifndef DiskSpan
  #define DiskSpan "no"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\desktop-app"
#endif
#define AppName "Desktop App"
#define AppExe "desktop-app.exe"

[Setup]
AppId={{6B1D5C1E-3F0A-4E43-9C55-2D7A3F6B8E41}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion} ({#Variant})
AppPublisher=desktop-app contributors
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per-user install by default (no admin prompt); the dialog offers a machine-wide install.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir=..\..\dist\installer
OutputBaseFilename=DesktopApp-{#AppVersion}-windows-{#Variant}-setup
SetupIconFile=..\..\resources\icons\desktop-app.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName}
WizardStyle=modern
Compression=lzma2/max
SolidCompression=yes
LZMAUseSeparateProcess=yes
DiskSpanning={#DiskSpan}
; Slices under 2 GiB, so each is a valid GitHub release asset (ignored without DiskSpanning).
DiskSliceSize=2000000000

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; An update replaces the bundle's files; stale modules from an older version must not linger.
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; Settings, the gallery and generated images live in the user's folders (not in {app}) and are
; deliberately kept on uninstall.
