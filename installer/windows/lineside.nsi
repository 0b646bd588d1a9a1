; Lineside installer for Windows 10/11 (x64), one script for both editions.
;
;   makensis /DEDITION=station /DVERSION=0.1.0 /DSOURCE_DIR=..\out\dist\lineside-station
;            /DOUT_FILE=..\out\Lineside-station-0.1.0-setup.exe
;            [/DVCREDIST=path\to\vc_redist.x64.exe] installer\windows\lineside.nsi
;
; Per-machine install into Program Files (read-only for users: the app keeps its data in
; the user's profile), Start-menu and desktop shortcuts, the Microsoft Visual C++ runtime
; (ONNX Runtime needs 14.40 or newer: with an older msvcp140.dll it crashes on start),
; and an uninstaller that leaves every project, log and setting in place.
; Both editions install into the same folder under the same name: installing one
; replaces the other (the workstation does everything the station does).

Unicode true
ManifestDPIAware true
SetCompressor /SOLID lzma
SetCompressorDictSize 64

!ifndef EDITION
  !error "define EDITION=station or EDITION=workstation"
!endif
!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!ifndef SOURCE_DIR
  !error "define SOURCE_DIR, the frozen folder to install"
!endif
!ifndef OUT_FILE
  !define OUT_FILE "Lineside-${EDITION}-${VERSION}-setup.exe"
!endif
!if "${EDITION}" == "station"
  !define EDITION_TITLE "Station"
  !define EDITION_TEXT "line-side inspection (no training)"
!else if "${EDITION}" == "workstation"
  !define EDITION_TITLE "Workstation"
  !define EDITION_TEXT "inspection and one-button retraining"
!else
  !error "EDITION must be station or workstation"
!endif

!define APP "Lineside"
!define PUBLISHER "Lineside"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP}"
!define VC_RUNTIME_KEY "SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\X64"
!define VC_MIN_MINOR 40

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "x64.nsh"
!include "FileFunc.nsh"

Name "${APP} ${EDITION_TITLE} ${VERSION}"
OutFile "${OUT_FILE}"
InstallDir "$PROGRAMFILES64\${APP}"
InstallDirRegKey HKLM "${UNINSTALL_KEY}" "InstallLocation"
RequestExecutionLevel admin
BrandingText "${APP} ${VERSION} (${EDITION_TITLE} edition)"
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP} ${EDITION_TITLE}"
VIAddVersionKey "FileDescription" "${APP} ${EDITION_TITLE} installer"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "CompanyName" "${PUBLISHER}"
VIAddVersionKey "LegalCopyright" "Apache-2.0"

!define MUI_ICON "..\..\resources\lineside.ico"
!define MUI_UNICON "..\..\resources\lineside.ico"
!define MUI_ABORTWARNING
!define MUI_WELCOMEPAGE_TEXT "This installs ${APP} ${VERSION}, ${EDITION_TITLE} edition: ${EDITION_TEXT}.$\r$\n$\r$\nProjects, logs and settings are kept in your user profile and are never removed by an update or by uninstalling."
!define MUI_FINISHPAGE_RUN "$INSTDIR\Lineside.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP} now"
!define MUI_UNCONFIRMPAGE_TEXT_TOP "${APP} will be removed from this PC. Your projects (Documents\Lineside), logs and settings (AppData\Local\Lineside) are kept."

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "${APP} needs 64-bit Windows 10 or 11."
    Abort
  ${EndIf}
  SetRegView 64
  SetShellVarContext all
FunctionEnd

Function un.onInit
  SetRegView 64
  SetShellVarContext all
FunctionEnd

; An earlier version (or the other edition) is removed first: a frozen folder's file
; set changes between versions, and stale libraries beside new ones break the app.
Function RemovePreviousVersion
  ReadRegStr $0 HKLM "${UNINSTALL_KEY}" "InstallLocation"
  ${If} $0 != ""
  ${AndIf} ${FileExists} "$0\uninstall.exe"
    DetailPrint "Removing the installed version in $0 (your projects and data are kept)"
    ExecWait '"$0\uninstall.exe" /S _?=$0' $1
    Delete "$0\uninstall.exe"
    RMDir "$0"
  ${EndIf}
FunctionEnd

Function InstallVcRuntime
  ReadRegDWORD $0 HKLM "${VC_RUNTIME_KEY}" "Installed"
  ReadRegDWORD $1 HKLM "${VC_RUNTIME_KEY}" "Minor"
  ${If} $0 == 1
  ${AndIf} $1 >= ${VC_MIN_MINOR}
    DetailPrint "Visual C++ runtime 14.$1 is present"
    Return
  ${EndIf}
!ifdef VCREDIST
  DetailPrint "Installing the Microsoft Visual C++ runtime"
  SetOutPath "$PLUGINSDIR"
  File "/oname=vc_redist.x64.exe" "${VCREDIST}"
  ExecWait '"$PLUGINSDIR\vc_redist.x64.exe" /install /quiet /norestart' $2
  ; 0 = done, 1638 = a newer one is installed, 3010 = done, restart pending
  ${If} $2 != 0
  ${AndIf} $2 != 1638
  ${AndIf} $2 != 3010
    MessageBox MB_ICONEXCLAMATION "The Visual C++ runtime could not be installed (code $2). ${APP} may not start until it is installed."
  ${EndIf}
!else
  MessageBox MB_ICONEXCLAMATION "This PC needs the Microsoft Visual C++ 2015-2022 runtime (x64, 14.${VC_MIN_MINOR} or newer) for ${APP}. Ask IT to install vc_redist.x64.exe."
!endif
FunctionEnd

Section "${APP}" SecMain
  SectionIn RO
  Call RemovePreviousVersion
  Call InstallVcRuntime

  SetOutPath "$INSTDIR"
  File /r "${SOURCE_DIR}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateDirectory "$SMPROGRAMS\${APP}"
  CreateShortcut "$SMPROGRAMS\${APP}\${APP}.lnk" "$INSTDIR\Lineside.exe" "" "$INSTDIR\Lineside.exe" 0
  CreateShortcut "$SMPROGRAMS\${APP}\${APP} demo project.lnk" "$INSTDIR\Lineside.exe" "--demo" "$INSTDIR\Lineside.exe" 0
  CreateShortcut "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk" "$INSTDIR\uninstall.exe"
  CreateShortcut "$DESKTOP\${APP}.lnk" "$INSTDIR\Lineside.exe" "" "$INSTDIR\Lineside.exe" 0

  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayName" "${APP} (${EDITION_TITLE} edition)"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\Lineside.exe"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Edition" "${EDITION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "EstimatedSize" $0
SectionEnd

; Removes only what the installer put there: never a recursive delete of $INSTDIR (it
; may have been pointed at a folder holding other things), never the user's data.
Section "Uninstall"
  Delete "$DESKTOP\${APP}.lnk"
  Delete "$SMPROGRAMS\${APP}\${APP}.lnk"
  Delete "$SMPROGRAMS\${APP}\${APP} demo project.lnk"
  Delete "$SMPROGRAMS\${APP}\Uninstall ${APP}.lnk"
  RMDir "$SMPROGRAMS\${APP}"

  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\Lineside.exe"
  Delete "$INSTDIR\lineside-cli.exe"
  Delete "$INSTDIR\lineside"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"

  DeleteRegKey HKLM "${UNINSTALL_KEY}"
SectionEnd
