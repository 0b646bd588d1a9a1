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
; Optional component "Start the station with Windows": a Task Scheduler task that runs
; `lineside-cli.exe run @station.args` at start-up (lineside-station-task.xml says why
; it is built as it is). Setup options for IT: /STATION selects it, /STATIONUSER=NAME
; runs it as NAME instead of SYSTEM (an account without a password: NT AUTHORITY\LOCALSERVICE,
; NT AUTHORITY\NETWORKSERVICE; installer/README.md says how to use a user account).
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
!define STATION_TASK "Lineside Station"
!define SCHTASKS '"$SYSDIR\schtasks.exe"'

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "x64.nsh"
!include "FileFunc.nsh"
!include "Sections.nsh"
!include "WordFunc.nsh"

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
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Var StationUser  ; the account the start-up task runs as
Var StationFresh  ; 1: the arguments file was just written (no project named yet)

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "${APP} needs 64-bit Windows 10 or 11."
    Abort
  ${EndIf}
  SetRegView 64
  SetShellVarContext all
  Call StationOnInit
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
  ; A running station holds the program's files open. Its task (if any) is removed by the
  ; old uninstaller below and registered again by the station component.
  nsExec::Exec '${SCHTASKS} /End /TN "${STATION_TASK}"'
  Pop $0
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

; -- the station at Windows start-up -------------------------------------------------

; The station's configuration and data folder (ProgramData: the task's account may have
; no profile of its own). Both stay when Lineside is updated or uninstalled.
!define STATION_ARGS "$APPDATA\${APP}\station.args"
!define STATION_HOME "$APPDATA\${APP}\station"

Section /o "Start the station with Windows" SecStation
  CreateDirectory "${STATION_HOME}"
  InitPluginsDir
  SetOutPath "$PLUGINSDIR"
  File "lineside-station-task.xml"
  File "station.args"
  StrCpy $StationFresh 0
  ${IfNot} ${FileExists} "${STATION_ARGS}"
    Push "$PLUGINSDIR\station.args"
    Push "${STATION_ARGS}"
    Push 0
    Call RenderTemplate
    StrCpy $StationFresh 1
  ${EndIf}
  Push "$PLUGINSDIR\lineside-station-task.xml"
  Push "$PLUGINSDIR\task.xml"
  Push 1
  Call RenderTemplate
  DetailPrint "Registering the task ${STATION_TASK} (runs as $StationUser)"
  nsExec::ExecToLog '${SCHTASKS} /Create /F /TN "${STATION_TASK}" /XML "$PLUGINSDIR\task.xml" /RU "$StationUser"'
  Pop $0
  ${If} $0 != 0
    MessageBox MB_ICONEXCLAMATION "The start-up task could not be registered (schtasks exit code $0); the details list says why." /SD IDOK
    Return
  ${EndIf}
  ${If} $StationUser != "SYSTEM"
    ; SYSTEM may write everywhere; another account needs the right to write its logs.
    ; icacls does not know schtasks' spellings of the service accounts: their SIDs then.
    StrCpy $1 $StationUser
    ${If} $StationUser == "NT AUTHORITY\LOCALSERVICE"
    ${OrIf} $StationUser == "NT AUTHORITY\LOCAL SERVICE"
      StrCpy $1 "*S-1-5-19"
    ${ElseIf} $StationUser == "NT AUTHORITY\NETWORKSERVICE"
    ${OrIf} $StationUser == "NT AUTHORITY\NETWORK SERVICE"
      StrCpy $1 "*S-1-5-20"
    ${EndIf}
    nsExec::ExecToLog '"$SYSDIR\icacls.exe" "${STATION_HOME}" /grant "$1:(OI)(CI)M"'
    Pop $0
  ${EndIf}
  ${If} $StationFresh == 1
    ; No project is named yet: the task waits, disabled, until the file says what to run.
    nsExec::ExecToLog '${SCHTASKS} /Change /TN "${STATION_TASK}" /DISABLE'
    Pop $0
    MessageBox MB_ICONINFORMATION `The station starts with Windows once ${STATION_ARGS} names a project and its cameras. Edit that file, then run as administrator:$\r$\n$\r$\nschtasks /Change /TN "${STATION_TASK}" /ENABLE$\r$\nschtasks /Run /TN "${STATION_TASK}"` /SD IDOK
  ${Else}
    nsExec::ExecToLog '${SCHTASKS} /Run /TN "${STATION_TASK}"'
    Pop $0
  ${EndIf}
SectionEnd

; Copies the ASCII template (stack: source, destination, is-XML) to the destination as
; UTF-16 LE with a BOM, its placeholders filled in: Windows exports (and reads) task XML
; as UTF-16, and `lineside run` reads an arguments file as UTF-16 or UTF-8 alike, so
; folder names in any language survive.
Function RenderTemplate
  Exch $R2 ; is-XML       (stack: old R2, destination, source)
  Exch
  Exch $R1 ; destination  (stack: old R1, old R2, source)
  Exch 2
  Exch $R0 ; source       (stack: old R0, old R2, old R1)
  Push $R3
  Push $R4
  Push $R5
  Push $R6
  Push $R7
  StrCpy $R5 "$INSTDIR\lineside-cli.exe"
  StrCpy $R6 "${STATION_ARGS}"
  StrCpy $R7 "${STATION_HOME}"
  ${If} $R2 == 1  ; "&" is legal in a folder name and special in XML
    ${WordReplace} $R5 "&" "&amp;" "+" $R5
    ${WordReplace} $R6 "&" "&amp;" "+" $R6
    ${WordReplace} $R7 "&" "&amp;" "+" $R7
  ${EndIf}
  FileOpen $R3 $R0 r
  FileOpen $R4 $R1 w
  FileWriteUTF16LE /BOM $R4 ""
  ${If} $R2 == 1
    FileWriteUTF16LE $R4 '<?xml version="1.0" encoding="UTF-16"?>$\r$\n'
  ${EndIf}
  ${Do}
    ClearErrors
    FileRead $R3 $R0
    ${If} ${Errors}
      ${Break}
    ${EndIf}
    ${WordReplace} $R0 "{{LINESIDE_CLI}}" $R5 "+" $R0
    ${WordReplace} $R0 "{{STATION_ARGS}}" $R6 "+" $R0
    ${WordReplace} $R0 "{{STATION_HOME}}" $R7 "+" $R0
    FileWriteUTF16LE $R4 $R0
  ${Loop}
  FileClose $R3
  FileClose $R4
  Pop $R7
  Pop $R6
  Pop $R5
  Pop $R4
  Pop $R3
  Pop $R0
  Pop $R2
  Pop $R1
FunctionEnd

; After the sections (it needs their numbers): which account, and whether the station
; component starts selected: /STATION or /STATIONUSER on the command line, or a task
; already registered (an update keeps it: the old uninstaller removes the task first).
Function StationOnInit
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/STATIONUSER=" $StationUser
  ${If} ${Errors}
  ${OrIf} $StationUser == ""
    StrCpy $StationUser "SYSTEM"
  ${EndIf}
  ClearErrors
  ${GetOptions} $R0 "/STATION" $R1  ; also matches /STATIONUSER=
  ${IfNot} ${Errors}
    !insertmacro SelectSection ${SecStation}
  ${EndIf}
  nsExec::Exec '${SCHTASKS} /Query /TN "${STATION_TASK}"'
  Pop $R1
  ${If} $R1 == 0
    !insertmacro SelectSection ${SecStation}
  ${EndIf}
FunctionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecMain} "The ${APP} app and command line."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecStation} "Runs the inspection station (lineside run) when Windows starts, before anyone logs on, and again within a minute if it stops. Configured in ${STATION_ARGS}."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

; Removes only what the installer put there: never a recursive delete of $INSTDIR (it
; may have been pointed at a folder holding other things), never the user's data.
Section "Uninstall"
  ; The start-up task first: disabled (its watchdog trigger would start the station
  ; again), ended (at once: committed results are kept, as in a power cut) so that the
  ; program's files can go, then deleted. Its arguments file and logs stay, like projects.
  nsExec::Exec '${SCHTASKS} /Change /TN "${STATION_TASK}" /DISABLE'
  Pop $0
  nsExec::Exec '${SCHTASKS} /End /TN "${STATION_TASK}"'
  Pop $0
  ${If} $0 == 0
    Sleep 1000 ; an ended process lets go of its files a moment later
  ${EndIf}
  nsExec::Exec '${SCHTASKS} /Delete /TN "${STATION_TASK}" /F'
  Pop $0
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
